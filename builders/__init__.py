"""Build CRI-O and its companions from source for arm64."""
