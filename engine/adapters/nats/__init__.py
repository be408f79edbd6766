"""NATS JetStream: the notification path of the distributed command queue."""
