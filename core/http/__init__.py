"""The HTTP side: the inference ingress, the Litestar app for everything else, and the routes
of each API family. Nothing here decides policy; it parses, calls the pipeline and writes."""
