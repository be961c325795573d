"""'Send cart link' now needs a template (issue 10) and is off by default.

Connections that had it on without a template never sent Order.CartUrl; they are switched off, so what they send
is unchanged and their page no longer claims a cart link that cannot be built.
"""

from django.db import migrations, models


def switch_off_cart_links_without_template(apps, schema_editor):
    Connection = apps.get_model("integration", "Connection")
    on = Connection.objects.filter(send_cart_link=True).values_list("pk", "cart_link_template")
    without_template = [pk for pk, template in on if not (template or "").strip()]
    Connection.objects.filter(pk__in=without_template).update(send_cart_link=False)


class Migration(migrations.Migration):
    dependencies = [
        ("integration", "0006_console_health_and_rejected_calls"),
    ]

    operations = [
        migrations.AlterField(
            model_name="connection",
            name="cart_link_template",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The abandoned cart's link, {selection} standing for the cart's id, e.g. https://shop.example/abandoned-cart/{selection}",
                max_length=500,
            ),
        ),
        migrations.AlterField(
            model_name="connection",
            name="send_cart_link",
            field=models.BooleanField(
                default=False,
                help_text="Send Order.CartUrl with OrderCreated. Needs a cart link template: refused without one.",
            ),
        ),
        migrations.RunPython(switch_off_cart_links_without_template, migrations.RunPython.noop),
    ]
