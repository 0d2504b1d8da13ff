"""Generated webhook bodies: whatever arrives, the answer is never a 5xx."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supportbot.extensions import db

SECRET = {"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret"}

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

# Updates shaped like Telegram's, with any field swapped for any JSON value.
ids = st.integers(min_value=-(2**70), max_value=2**70) | scalars
users = st.fixed_dictionaries(
    {"id": ids, "is_bot": st.booleans(), "first_name": st.text(max_size=10)},
    optional={
        "last_name": scalars,
        "username": scalars,
        "language_code": scalars,
    },
)
chats = st.fixed_dictionaries(
    {"id": ids, "type": st.sampled_from(["private", "group", "channel"]) | scalars}
)
messages = st.fixed_dictionaries(
    {"message_id": ids, "date": ids, "chat": chats | json_values},
    optional={
        "from": users | json_values,
        "text": st.text(max_size=50) | scalars,
        "caption": scalars,
        "photo": st.lists(
            st.fixed_dictionaries(
                {
                    "file_id": scalars,
                    "file_unique_id": scalars,
                    "width": ids,
                    "height": ids,
                }
            ),
            max_size=3,
        )
        | json_values,
        "document": json_values,
        "location": json_values,
        "contact": json_values,
        "sticker": json_values,
        "edit_date": ids,
    },
)
members = st.fixed_dictionaries(
    {"status": st.sampled_from(["member", "kicked", "left"]) | scalars, "user": users}
)
chat_member_updates = st.fixed_dictionaries(
    {
        "chat": chats,
        "from": users | json_values,
        "date": ids,
        "old_chat_member": members | json_values,
        "new_chat_member": members | json_values,
    }
)
callback_queries = st.fixed_dictionaries(
    {"id": st.text(max_size=8) | scalars, "from": users | json_values},
    optional={
        "data": st.sampled_from(["rate:1:5", "rate:x:9", "rate:1:1:1", ""]) | scalars,
        "message": messages | json_values,
        "chat_instance": scalars,
    },
)
updates = st.fixed_dictionaries(
    {"update_id": ids},
    optional={
        "message": messages | json_values,
        "edited_message": messages,
        "my_chat_member": chat_member_updates | json_values,
        "callback_query": callback_queries | json_values,
    },
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=updates | json_values)
def test_generated_updates_never_get_a_server_error(app, client, body):
    response = client.post("/telegram/webhook", json=body, headers=SECRET)

    assert response.status_code < 500, response.get_data(as_text=True)
    with app.app_context():
        db.session.remove()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.binary(max_size=200))
def test_generated_bytes_never_get_a_server_error(client, body):
    response = client.post(
        "/telegram/webhook",
        data=body,
        content_type="application/json",
        headers=SECRET,
    )

    assert response.status_code < 500
