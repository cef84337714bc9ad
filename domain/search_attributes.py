"""The custom search attributes every Orderflow namespace has, in one place."""

from temporalio.common import SearchAttributeKey

STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CUSTOMER = SearchAttributeKey.for_keyword("CustomerCode")
CHANNEL = SearchAttributeKey.for_keyword("Channel")
TOTAL = SearchAttributeKey.for_float("OrderTotal")
AWAITING_ROLE = SearchAttributeKey.for_keyword("AwaitingRole")

ALL = (STATUS, CUSTOMER, CHANNEL, TOTAL, AWAITING_ROLE)
