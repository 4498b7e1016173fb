"""Conversion between generated protobuf messages and ``weir.client.types``.

One module per resource; nothing outside ``weir.client`` (and the gateway's
tests) should need these.
"""
