from django.db import migrations

from integration.flows import create_flows_operation


class Migration(migrations.Migration):
    """Back in stock installed on a database with connections: they get the flows of its two events."""

    dependencies = [
        ("backinstock", "0003_back_in_stock_settings"),
        ("integration", "0009_connection_back_in_stock_settings_moved"),
    ]

    operations = [create_flows_operation("ProductAlertWaiting", "ProductAlertTriggered")]
