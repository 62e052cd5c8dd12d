"""An example hub plugin: the fictional "lojinha" shop platform and its sandbox."""
