"""Building blocks: attention, positions, layers, ACT, long-input attention, mixture of experts."""
