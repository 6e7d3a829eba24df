"""Push delivery of recipients' alerts, configured per recipient in the registry: signed
webhooks and e-mail digests (`threatroute deliver`)."""
