"""The `--torch-threads` option shared by the benchmark scripts."""

import keras


def add_argument(parser):
    """Adds `--torch-threads` to an argparse parser."""
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch intra-op threads; 1 steadies timings on a busy machine",
    )


def apply(args):
    """Sets torch's intra-op threads from the parsed `--torch-threads`."""
    if args.torch_threads and keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(args.torch_threads)
