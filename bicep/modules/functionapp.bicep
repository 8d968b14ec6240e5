// The Function App on a Flex Consumption plan (FC1, Linux, Python).
//
// Why Flex Consumption rather than Elastic Premium: both give VNet integration and
// event-driven scale on Event Hubs, but Elastic Premium keeps the app's content on
// an Azure Files share reached with a storage *account key*
// (WEBSITE_CONTENTAZUREFILECONNECTIONSTRING); managed identity cannot mount it.
// Flex reads the package from a blob container with the app's own identity, so
// neither storage account needs shared keys. Flex also scales the Event Hubs
// trigger per function on target-based scaling (up to one instance per partition)
// and keeps always-ready instances for the HTTP API.
//
// Flex sets the language in functionAppConfig.runtime; it rejects the
// FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION app settings.

param location string

param appName string

param planName string

@description('Host storage account (AzureWebJobsStorage and the deployment package).')
param hostStorageName string

param deploymentContainerName string

param appInsightsName string

@description('App settings the code and the trigger bindings read (set by main.bicep).')
param appSettings object

@description('Resource id of the key-manager identity (keymanager.bicep), carried beside the app\'s own.')
param keyManagerIdentityId string

@description('Python version of the Functions worker.')
@allowed([
  '3.11'
])
param pythonVersion string = '3.11'

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@description('Instances kept warm for the HTTP API (0 for none).')
@minValue(0)
param alwaysReadyHttp int

@description('Subnet for outbound VNet integration (delegated to Microsoft.App/environments); empty for none.')
param subnetId string

param tags object

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  // The system-assigned identity is the data path (roles.bicep); the user-assigned one is
  // the key manager, used only for creating and rotating keys (keymanager.bicep).
  identity: {
    type: 'SystemAssigned, UserAssigned'
    userAssignedIdentities: {
      '${keyManagerIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    // The merchant API is public; everything behind it is reached over the VNet
    // when private networking is on.
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReadyHttp > 0 ? [
          {
            name: 'http'
            instanceCount: alwaysReadyHttp
          }
        ] : []
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// App settings as one resource so a redeploy replaces the whole set (no stale
// settings survive). The Application Insights connection string is an endpoint
// plus an instrumentation key, not a credential: the component has local auth
// disabled, so ingestion also needs the app's Entra token (the AUTHENTICATION_STRING).
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(appSettings, {
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
    // host.json sets telemetryMode OpenTelemetry; this lets the Python worker hand each
    // invocation's trace context to the app's OpenTelemetry (shared/telemetry/azure_monitor.py).
    PYTHON_ENABLE_OPENTELEMETRY: 'true'
  })
}

// No FTP and no basic-auth deployments: publishing uses Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output appName string = site.name
output defaultHostName string = site.properties.defaultHostName
output principalId string = site.identity.principalId
