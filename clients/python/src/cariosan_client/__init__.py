"""The Python SDK of Cariosan's public HTTP API (API.md); it talks HTTP only, never to server code.

async with ServerClient() as server:  # CARIOS_API_URL, CARIOS_API_SECRET
    token = await server.create_token("alice")

async with ChatClient("https://chat.example.com", token=token.token) as chat:
    await chat.send("general", "hello")
"""

from cariosan_client.chat import ChatClient, TokenProvider
from cariosan_client.errors import (
    CariosanError,
    Conflict,
    EventsExpired,
    Forbidden,
    Internal,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TransportError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    error_from_response,
)
from cariosan_client.models import (
    Attachment,
    Channel,
    ChannelPage,
    Delivery,
    DeliveryPage,
    Download,
    EventPage,
    Me,
    Member,
    Message,
    MessagePage,
    Token,
    Upload,
    User,
    Webhook,
)
from cariosan_client.retry import RetryPolicy
from cariosan_client.server import ServerClient

__all__ = [
    "Attachment",
    "CariosanError",
    "Channel",
    "ChannelPage",
    "ChatClient",
    "Conflict",
    "Delivery",
    "DeliveryPage",
    "Download",
    "EventPage",
    "EventsExpired",
    "Forbidden",
    "Internal",
    "Me",
    "Member",
    "Message",
    "MessagePage",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RetryPolicy",
    "ServerClient",
    "Token",
    "TokenProvider",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "Upload",
    "User",
    "ValidationFailed",
    "Webhook",
    "error_from_response",
]
