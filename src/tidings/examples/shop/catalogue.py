"""What the shop sells: a small catalogue with prices and the stock it starts with."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOGUE", "RESTOCK_BELOW", "Product", "price_of"]


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: float
    initial_stock: int
    restock: int
    """Units ordered in when stock runs low; 0 for a limited edition that sells out."""


CATALOGUE: tuple[Product, ...] = (
    Product("BOOK-PY", "Fluent Python", 49.90, 300, 200),
    Product("BOOK-DDD", "Domain-Driven Design", 54.00, 250, 200),
    Product("MUG-EVT", "Event mug", 12.50, 400, 300),
    Product("TEE-CE", "CloudEvents T-shirt", 19.00, 300, 200),
    Product("STICKERS", "Sticker pack", 3.20, 600, 400),
    Product("KB-MECH", "Mechanical keyboard", 129.00, 120, 100),
    Product("LAMP-LTD", "Desk lamp, limited edition", 89.00, 120, 0),
    Product("HOODIE", "Hoodie", 45.00, 200, 150),
)
#: Stock of a product that restocks is topped up when it falls below this.
RESTOCK_BELOW = 25

_PRICES = {p.sku: p.price for p in CATALOGUE}


def price_of(sku: str) -> float:
    """The unit price of ``sku`` (KeyError for an unknown SKU)."""
    return _PRICES[sku]
