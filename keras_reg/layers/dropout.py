"""Placeholder: being written."""


class Dropout:
    pass
