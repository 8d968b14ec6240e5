// One private endpoint for one service sub-resource, registered in its private DNS zone.

param location string

param name string

param subnetId string

@description('Resource id of the service the endpoint connects to.')
param targetId string

@description('Sub-resource (group id): Sql, namespace, vault, blob, queue, table.')
param groupId string

@description('Private DNS zone (created by network.bicep) the endpoint registers in.')
param dnsZoneName string

param tags object

resource endpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: targetId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }
}

resource zoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: replace(dnsZoneName, '.', '-')
        properties: {
          privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', dnsZoneName)
        }
      }
    ]
  }
}
