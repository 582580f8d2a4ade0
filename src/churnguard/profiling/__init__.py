"""Profiling: events become entities (pods, containers, instances) and their feature rows.

``entities`` keys and resolves entity state, ``spec`` loads the versioned feature spec,
``features`` computes a window's or a whole life's values, ``profile`` holds the row type.
"""
