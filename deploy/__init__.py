"""The deploy layer: `providers` (where instances live), `swap` (replace one), `backup`
(snapshot and restore one), and what they share: the deploy `spec` and the `maintenance` page."""
