"""The product's logic. No FastAPI imports, no HTTP status codes: services raise domain errors."""
