"""Publishing: the push stage (Hub upload with its model card) and the run report."""
