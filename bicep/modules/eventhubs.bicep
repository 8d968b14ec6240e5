// Event Hubs: the namespace, the orders hub and the ingest trigger's consumer group.
//
// Standard tier: up to 32 partitions per hub, auto-inflate of throughput units,
// private endpoints. The partition count cannot be changed on Standard after the
// hub exists, so size it for the region's peak (params/*.parameters.json).

param location string

@description('Event Hubs namespace name (globally unique).')
param namespaceName string

param hubName string

param consumerGroupName string

@minValue(1)
@maxValue(32)
param partitionCount int

@description('Throughput units at deployment.')
@minValue(1)
@maxValue(40)
param capacity int

@description('Auto-inflate ceiling in throughput units; equal to capacity turns auto-inflate off.')
@minValue(1)
@maxValue(40)
param maxCapacity int

@minValue(1)
@maxValue(7)
param retentionInDays int

param privateNetworking bool

param tags object

var autoInflate = maxCapacity > capacity

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: capacity
  }
  properties: {
    // No SAS keys: senders and the trigger authenticate with Entra ID.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    isAutoInflateEnabled: autoInflate
    maximumThroughputUnits: autoInflate ? maxCapacity : 0
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    zoneRedundant: true
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: hubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: retentionInDays
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: consumerGroupName
  properties: {
    userMetadata: 'Accrue ingest trigger'
  }
}

output namespaceName string = namespace.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output hubName string = hub.name
output consumerGroupName string = consumerGroup.name
