"""Images: content store, references, formats, layers, snapshots and image metadata."""
