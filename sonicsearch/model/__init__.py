"""The model: log-mel front end (frontend), backbone registry and heads (backbones), weight
loading (weights) and the one-file model format (checkpoint)."""
