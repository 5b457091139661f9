"""``accelerate launch -m rft.train RECIPE [--set K=V ...] [--resume PATH | --overwrite]``: one training process."""

from rft.cli import main

if __name__ == "__main__":
    import sys

    main(["train", *sys.argv[1:]])
