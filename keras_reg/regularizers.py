"""Placeholder: being written."""


class L1:
    pass


class L2:
    pass


class ElasticNet:
    pass


L1L2 = ElasticNet
