"""Placeholder: being written."""


class BatchNormalization:
    pass
