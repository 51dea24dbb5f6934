"""Large values in an object store: a value whose JSON is over the app's offload threshold is
written to the store first, and the row keeps a small reference to it (references.py); every
reader gets the value back through `serialization.loads`."""

from tether.objects.references import Objects, is_reference, object_keys, resolve, stored_text
from tether.objects.stores import FileStore, ObjectStore, open_object_store

__all__ = ["FileStore", "ObjectStore", "Objects", "is_reference", "object_keys",
           "open_object_store", "resolve", "stored_text"]
