"""Device and link profiles of real edge hardware, and the catalog that holds them."""
