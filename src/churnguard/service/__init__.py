"""The Kafka service: the consumer loop, checkpoints, hot reload, metrics, embedded broker.

A driver around :class:`churnguard.pipeline.Pipeline`; nothing in the core imports it.
"""
