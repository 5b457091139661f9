"""``rft serve``: the vLLM server that a recipe's ``rollout.vllm_mode: server`` run connects to.

The command line is TRL's (``trl.scripts.vllm_serve.build_command``: NCCL weight transfer,
processed log-probs) with the recipe's model, dtype, pixel budget, host, port and limits, so the
server sees images and weights exactly as the trainer does.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from rft.compat.vllm import DEV_MODE
from rft.recipe.schema import Recipe
from rft.rollout.engine import engine_options


def served_model(recipe: Recipe) -> str:
    """The model folder or hub id to serve; a recipe's tiny model is built where ``rft train`` will find it."""
    if recipe.model.tiny is not None:
        from rft.models.load import tiny_model_path

        return str(tiny_model_path(recipe.model.tiny, Path(recipe.output.dir)))
    return recipe.model.path


def model_family(model: str) -> str:
    """``config.model_type`` of a model folder or hub id."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model).model_type


def serve_command(recipe: Recipe, model: str, family: str, images_per_prompt: int = 1) -> list[str]:
    """The ``vllm serve`` command line (starting with the Python executable) for ``recipe``, whose prompts
    hold up to ``images_per_prompt`` images (:func:`recipe_images_per_prompt`)."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    roll = recipe.rollout
    options = engine_options(recipe.model, family, images_per_prompt)
    args = ScriptArguments(
        model=model, tensor_parallel_size=roll.tensor_parallel_size, host=roll.server_host, port=roll.server_port,
        gpu_memory_utilization=roll.gpu_memory_utilization, dtype=options.pop("dtype"),
        max_model_len=roll.max_model_length,
    )
    extra = []
    for key, value in options.items():
        extra += [f"--{key.replace('_', '-')}", json.dumps(value)]
    return build_command(args, extra)


def recipe_images_per_prompt(recipe: Recipe) -> int:
    """The most images a prompt of the recipe's training data holds (its rows read as ``rft train`` reads
    them, without resizing): its own images, and a ``crop`` exemplar's crops."""
    from rft.data.build import prompt_images
    from rft.data.sources import dataset_rows

    cache = Path(recipe.output.dir) / "data" / "cache"
    return max(prompt_images(row) for spec in recipe.data.datasets
               for row in dataset_rows(spec, recipe.data.on_bad_image, cache))


def serve(recipe: Recipe, dry_run: bool = False) -> int:
    """Print the server's command line and, unless ``dry_run``, replace this process with it."""
    model = served_model(recipe)
    command = serve_command(recipe, model, model_family(model), recipe_images_per_prompt(recipe))
    print("serving:", shlex.join([f"{DEV_MODE}=1", *command]), flush=True)
    if dry_run:
        return 0
    # The weight-transfer and prefix-cache endpoints that TRL's trainer uses live behind vLLM's dev mode.
    os.execve(sys.executable, command, {**os.environ, DEV_MODE: "1"})
    return 0  # not reached
