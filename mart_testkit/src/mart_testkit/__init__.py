"""What the mart's tests share, kept out of the services' runtime packages (it imports pytest):
``fixtures`` (the pytest plugin: databases, buses, JWT keys, ``eventually``) and ``fake_stripe`` (a local
server answering like Stripe's API, with scripted failures)."""
