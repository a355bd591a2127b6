"""The test harness: real NATS, Redis (and later a registry) for every test that needs them."""
