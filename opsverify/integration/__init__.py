"""The integration gate's engine: user flows against the running service (`flows`)."""
