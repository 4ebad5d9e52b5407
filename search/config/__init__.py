"""The experiment file, read and checked into typed settings: the layer everything above reads."""
