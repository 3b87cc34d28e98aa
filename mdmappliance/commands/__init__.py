"""The command catalog: every request type of the spec, checked before it is queued, and
its answer turned into inventory. One module per family; ``catalog`` gathers them."""
