"""The learner role: batches experience from actors, updates the network, publishes weights."""
