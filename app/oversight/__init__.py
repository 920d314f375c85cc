"""Human oversight of the model's decisions: reviews by people and the review queue (issue 16)."""
