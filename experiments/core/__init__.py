"""The shared layer under the experiments; it imports no experiment."""
