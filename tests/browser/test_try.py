from tests.browser.conftest import take_screenshot


def test_look(admin_page, live_url, shop):
    admin_page.goto(f"{live_url}/admin/integration/connection/{shop.pk}/change/")
    take_screenshot(admin_page, "look-conn")
    take_screenshot(admin_page, "look-conn-full", full_page=True)
