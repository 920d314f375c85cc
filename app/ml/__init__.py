"""Machine-learning code shared by training and serving: schema, data, pipeline, evaluation."""
