"""Online Mart web front: the shop, the admin and the event console (docs/web.md)."""
