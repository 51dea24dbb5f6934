"""Integrations with other libraries, each behind an optional extra; nothing here is imported by
`tether` itself."""
