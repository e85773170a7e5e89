"""Placeholder: being written."""


class EarlyStopping:
    pass
