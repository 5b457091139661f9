"""``torchrun -m rft.eval RECIPE [--model PATH] [--set K=V ...]``: one evaluation process."""

from rft.cli import main

if __name__ == "__main__":
    import sys

    main(["eval", *sys.argv[1:]])
