// Azure Web PubSub for live updates (issue 14): HTTP functions cannot hold a WebSocket, so the
// change-feed function publishes GraphQL subscription events to a group per tenant and
// browsers connect here with a short-lived URL from POST /graphql/v1/negotiate.
// Entra ID only (local auth off): the app signs tokens and sends with its managed identity.
// Public network access stays on: dashboards connect from browsers, with a token per tenant.

param location string

@description('Web PubSub resource name (globally unique).')
param serviceName string

@description('The hub of live updates (WEBPUBSUB_HUB).')
param hubName string

param tags object

resource service 'Microsoft.SignalRService/webPubSub@2024-03-01' = {
  name: serviceName
  location: location
  tags: tags
  sku: {
    name: 'Standard_S1'
    tier: 'Standard'
    capacity: 1
  }
  properties: {
    disableLocalAuth: true
    disableAadAuth: false
    publicNetworkAccess: 'Enabled'
    tls: {
      clientCertEnabled: false
    }
  }
}

resource hub 'Microsoft.SignalRService/webPubSub/hubs@2024-03-01' = {
  parent: service
  name: hubName
  properties: {
    // Only connections with a token the app issued, which joins one tenant's group.
    anonymousConnectPolicy: 'deny'
  }
}

output serviceName string = service.name
output endpoint string = 'https://${service.properties.hostName}'
output hubName string = hub.name
