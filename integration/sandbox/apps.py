from django.apps import AppConfig


class SandboxConfig(AppConfig):
    name = "integration.sandbox"
    label = "sandbox"
    verbose_name = "Sandbox (fake Rule and fake Centra)"
