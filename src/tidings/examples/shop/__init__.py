"""The e-commerce shop: seven services that talk only through events (``tidings demo``).

Each service is its own :class:`~tidings.App` in its own module and knows the
others only through the event types of :mod:`.events`:

* :mod:`.orders` accepts orders and follows them to the end;
* :mod:`.inventory` reserves, releases and ships stock (state rebuilt from its events);
* :mod:`.payment` charges orders (some declined, some time out once);
* :mod:`.saga` moves each order on, with compensation when payment fails;
* :mod:`.shipping` ships confirmed orders;
* :mod:`.mailer` emails confirmations to an outbox file, exactly once;
* :mod:`.analytics` keeps live metrics from every topic;
* :mod:`.fraud` flags suspicious customers, added late without touching producers.

:class:`.system.Shop` runs them all in one process; each also runs alone with
``tidings run tidings.examples.shop.<service>:app`` on a shared embedded
database, driven by ``python -m tidings.examples.shop.orders`` and checked by
``python -m tidings.examples.shop.check``. See ``docs/demo.md``.
"""
