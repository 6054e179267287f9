"""The contract edge, server and simulator share: models, topics, identifier codecs. No I/O."""
