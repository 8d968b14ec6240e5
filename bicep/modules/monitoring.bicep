// Log Analytics workspace and workspace-based Application Insights for one stack.
// Both live in the stack's own location so telemetry (which can carry tenant
// ids and request paths) stays in the stack's geography.

@description('Azure region of the stack.')
param location string

@description('Name of the Log Analytics workspace.')
param workspaceName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int

param tags object

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // Ingestion needs an Entra token (the app's identity holds Monitoring Metrics
    // Publisher): the connection string alone cannot be used to send telemetry.
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
  }
}

output appInsightsName string = appInsights.name
output workspaceId string = workspace.id
