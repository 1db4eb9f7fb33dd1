"""The For You request path as small stages (sources, hydrators, filters, scorers, selector) run by
one pipeline runner (docs/DESIGN.md §2)."""
