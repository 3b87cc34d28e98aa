"""The admin API, one module per resource; each registers its routes on the API's Klein app."""
