"""The admin side: the JSON API routes, the OpenAPI document, read queries, webhooks and
metrics."""
