"""The labeling domain and its storage. Imports neither torch nor transformers."""
