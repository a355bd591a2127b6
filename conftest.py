"""Fixtures every test folder shares: real servers and the running platform."""

pytest_plugins = ["tests.harness.fixtures", "tests.harness.browser"]
