"""The pybreaker drop-in."""
