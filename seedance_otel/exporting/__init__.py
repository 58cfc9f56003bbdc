"""Getting snapshots out of the process: wire attributes, metrics, the shipper and its sinks."""
