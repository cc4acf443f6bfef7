"""doit tasks: `doit list` shows them; `doit build:crio-1.18` builds one recipe."""
import sys

from builders import tasks
from builders.errors import BuildError
from builders.recipe import load_all
from builders.settings import load_settings

try:
    SETTINGS = load_settings()
    RECIPES = load_all(SETTINGS.recipes)
except BuildError as error:
    sys.exit(f"error: {error}")

DOIT_CONFIG = {"default_tasks": ["about"], "verbosity": 2}


def task_about():
    """Say what this tool builds and how (the default task: never a build)."""
    return tasks.about(RECIPES, SETTINGS)
